package spec

import (
	"encoding/json"
	"time"
)

// Quantity is a Kubernetes quantity such as 512Mi or 2Gi, kept as the text
// the user wrote and the byte count it stands for.
type Quantity struct {
	Text  string
	Bytes int64
}

// MiB returns the quantity in whole mebibytes, rounded down.
func (q Quantity) MiB() int64 { return q.Bytes >> 20 }

// MarshalJSON writes the quantity as the user wrote it.
func (q Quantity) MarshalJSON() ([]byte, error) { return json.Marshal(q.Text) }

// Duration is a Go duration written as text ("30s", "1m30s").
type Duration struct {
	time.Duration
}

// MarshalJSON writes the duration in Go's notation.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Time is a timestamp written in RFC 3339 at one-second precision, in UTC,
// as Kubernetes writes metav1.Time.
type Time struct {
	time.Time
}

// MarshalJSON writes the time as RFC 3339 in UTC, or null when zero.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Truncate(time.Second).Format(time.RFC3339))
}
