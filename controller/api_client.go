package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/vmlet/vmlet/vmruntime"
)

// ErrDaemonNotRunning is returned by APIClient when nothing listens on the
// daemon's socket.
var ErrDaemonNotRunning = errors.New("vmlet daemon is not running")

// APIClient calls a daemon's local API over its unix socket.
type APIClient struct {
	socketPath string
	http       *http.Client
}

// NewAPIClient returns a client for the API socket at socketPath.
func NewAPIClient(socketPath string) *APIClient {
	dialer := &net.Dialer{}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socketPath)
		},
	}
	return &APIClient{socketPath: socketPath, http: &http.Client{Transport: transport}}
}

// Exec runs req.Argv in the guest of VM name and returns its exit code and
// output. A non-zero exit code is not an error.
func (c *APIClient) Exec(ctx context.Context, name string, req ExecRequest) (vmruntime.ExecResult, error) {
	var result vmruntime.ExecResult
	body, err := json.Marshal(req)
	if err != nil {
		return result, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(name)+"/exec", bytes.NewReader(body))
	if err != nil {
		return result, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&result); err != nil {
		return result, fmt.Errorf("decoding exec result: %w", err)
	}
	return result, nil
}

// Logs copies VM name's console log to w. With follow it keeps copying what
// the guest writes until ctx ends.
func (c *APIClient) Logs(ctx context.Context, name string, follow bool, w io.Writer) error {
	path := "/v1/vms/" + url.PathEscape(name) + "/logs"
	if follow {
		path += "?follow=1"
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// do sends one request and turns a failed status into an error that carries
// the daemon's message.
func (c *APIClient) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://vmlet"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if isNoDaemon(err) {
			return nil, fmt.Errorf("%w: no socket at %q (start it with vmlet run, or pass the same --state-dir)", ErrDaemonNotRunning, c.socketPath)
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var apiErr APIError
	if json.NewDecoder(resp.Body).Decode(&apiErr) != nil || apiErr.Error == "" {
		return nil, fmt.Errorf("daemon returned %s", resp.Status)
	}
	return nil, errors.New(apiErr.Error)
}

func isNoDaemon(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, errConnRefused)
}
