package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vmlet/vmlet/vmruntime"
)

// APISocketName is the daemon's local API socket in the state folder.
const APISocketName = "vmlet.sock"

// ExecRequest is the body of POST /v1/vms/{name}/exec.
type ExecRequest struct {
	Argv  []string `json:"argv"`
	Stdin []byte   `json:"stdin,omitempty"`
	// Timeout bounds the command in the guest; zero means the API's default.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// APIError is the body of every failed API call.
type APIError struct {
	Error string `json:"error"`
}

// defaultExecTimeout bounds a command run through the API when the request
// names no timeout.
const defaultExecTimeout = 5 * time.Minute

// logPollInterval is how often a followed console log is checked for growth.
const logPollInterval = 200 * time.Millisecond

// api serves the daemon's local HTTP API: commands in guests and their
// console logs. Whoever can reach its socket can run commands in every VM,
// so the socket is mode 0600.
type api struct {
	runtime  vmruntime.Runtime
	stateDir string
	log      logr.Logger
}

// NewAPIHandler returns the local API's routes:
//
//	POST /v1/vms/{name}/exec   runs ExecRequest.Argv in the guest, returns vmruntime.ExecResult
//	GET  /v1/vms/{name}/logs   the console log; ?follow=1 streams it as it grows
//
// Failed requests are logged to log.
func NewAPIHandler(rt vmruntime.Runtime, stateDir string, log logr.Logger) http.Handler {
	a := &api{runtime: rt, stateDir: stateDir, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/vms/{name}/exec", a.exec)
	mux.HandleFunc("GET /v1/vms/{name}/logs", a.logs)
	return mux
}

// ServeAPI serves the local API on socketPath until ctx ends, logging to the
// logger in ctx. A socket file left by an earlier daemon is replaced: the
// caller holds the state folder's lock, so no other daemon listens on it.
func ServeAPI(ctx context.Context, socketPath string, rt vmruntime.Runtime, stateDir string) error {
	listener, err := listenPrivate(socketPath)
	if err != nil {
		return err
	}

	server := &http.Server{
		Handler:           NewAPIHandler(rt, stateDir, logr.FromContextOrDiscard(ctx)),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stopped := context.AfterFunc(ctx, func() { server.Close() })
	defer stopped()

	err = server.Serve(listener)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving API on %q: %w", socketPath, err)
}

// listenPrivate listens on a unix socket at path that only its owner can
// use. It binds a temporary name, restricts it, and renames it into place,
// so the socket never appears at path before it is listening or while other
// users could still connect to it.
func listenPrivate(path string) (net.Listener, error) {
	temp := filepath.Join(filepath.Dir(path), ".api.sock")
	if err := os.Remove(temp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale API socket %q: %w", temp, err)
	}
	listener, err := net.Listen("unix", temp)
	if err != nil {
		return nil, fmt.Errorf("listening on API socket %q: %w", temp, err)
	}
	listener.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(temp, 0o600); err != nil {
		listener.Close()
		return nil, fmt.Errorf("restricting API socket %q: %w", temp, err)
	}
	if err := os.Rename(temp, path); err != nil {
		listener.Close()
		return nil, fmt.Errorf("placing API socket at %q: %w", path, err)
	}
	return &removingListener{Listener: listener, path: path}, nil
}

// removingListener removes its socket file when closed, as a unix listener
// does for the name it was bound to.
type removingListener struct {
	net.Listener
	path string
	once sync.Once
}

func (l *removingListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

func (a *api) exec(w http.ResponseWriter, r *http.Request) {
	name, ok := a.vmName(w, r)
	if !ok {
		return
	}
	var req ExecRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		a.fail(w, r, http.StatusBadRequest, fmt.Errorf("invalid exec request: %w", err))
		return
	}
	if len(req.Argv) == 0 {
		a.fail(w, r, http.StatusBadRequest, errors.New("invalid exec request: argv is empty"))
		return
	}

	agent, err := a.runtime.Agent(name)
	if err != nil {
		a.fail(w, r, http.StatusConflict, fmt.Errorf("vm %q has no agent connection (is it Running and Ready?): %w", name, err))
		return
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultExecTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	result, err := agent.Exec(ctx, req.Argv, req.Stdin)
	if err != nil {
		a.fail(w, r, http.StatusBadGateway, fmt.Errorf("running %q in vm %q: %w", req.Argv[0], name, err))
		return
	}
	writeJSON(w, http.StatusOK, result)
}

func (a *api) logs(w http.ResponseWriter, r *http.Request) {
	name, ok := a.vmName(w, r)
	if !ok {
		return
	}
	path := filepath.Join(a.stateDir, "vms", name, vmruntime.ConsoleLogFile)
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		a.fail(w, r, http.StatusNotFound, fmt.Errorf("vm %q has no console log yet", name))
		return
	}
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	defer file.Close()

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	if !follow {
		io.Copy(w, file)
		return
	}
	followLog(r.Context(), w, file)
}

// followLog copies file to w, then keeps copying what is appended until ctx
// ends, the way tail -f does.
func followLog(ctx context.Context, w http.ResponseWriter, file *os.File) {
	flusher, _ := w.(http.Flusher)
	ticker := time.NewTicker(logPollInterval)
	defer ticker.Stop()
	for {
		if _, err := io.Copy(w, file); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// vmName reads the {name} path value and rejects one that is not a DNS-1123
// label, since it names a folder.
func (a *api) vmName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if problems := validation.IsDNS1123Label(name); len(problems) > 0 {
		a.fail(w, r, http.StatusBadRequest, fmt.Errorf("invalid vm name %q: %s", name, problems[0]))
		return "", false
	}
	return name, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// fail logs a failed request and sends its error to the client. A client's
// mistake (a 4xx code, such as exec in a VM that is not Ready) is logged at
// V(1) only, since the client prints it.
func (a *api) fail(w http.ResponseWriter, r *http.Request, code int, err error) {
	if code < http.StatusInternalServerError {
		a.log.V(1).Info("API request rejected", "method", r.Method, "path", r.URL.Path, "code", code, "reason", err.Error())
	} else {
		a.log.Error(err, "API request failed", "method", r.Method, "path", r.URL.Path, "code", code)
	}
	writeJSON(w, code, APIError{Error: err.Error()})
}
