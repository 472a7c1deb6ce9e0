package spec

import (
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
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

// UnmarshalJSON reads a quantity from a string ("512Mi") or a number of
// bytes. The quantity must be a whole number of bytes. An empty string, as
// MarshalJSON writes for the zero Quantity, reads as the zero Quantity.
func (q *Quantity) UnmarshalJSON(data []byte) error {
	text, err := jsonScalar(data)
	if err != nil {
		return err
	}
	if text == "" {
		*q = Quantity{}
		return nil
	}
	parsed, err := ParseQuantity(text)
	if err != nil {
		return err
	}
	*q = parsed
	return nil
}

// UnmarshalJSON reads a duration in Go's notation ("30s").
func (d *Duration) UnmarshalJSON(data []byte) error {
	var text string
	if err := json.Unmarshal(data, &text); err != nil {
		return err
	}
	v, err := time.ParseDuration(text)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// UnmarshalJSON reads an RFC 3339 time, or null as the zero time.
func (t *Time) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var text string
	if err := json.Unmarshal(data, &text); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339, text)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// ParseQuantity parses a Kubernetes quantity ("512Mi", "2Gi", "1G" or a
// plain byte count) that stands for a whole, non-negative number of bytes.
func ParseQuantity(text string) (Quantity, error) {
	q, err := resource.ParseQuantity(text)
	if err != nil {
		return Quantity{}, fmt.Errorf("%q is not a quantity (use 512Mi, 2Gi)", text)
	}
	if q.Sign() < 0 {
		return Quantity{}, fmt.Errorf("%q is negative", text)
	}
	if q.Cmp(maxQuantity) > 0 {
		return Quantity{}, fmt.Errorf("%q is larger than 1Ei", text)
	}
	bytes := q.Value()
	if resource.NewQuantity(bytes, resource.BinarySI).Cmp(q) != 0 {
		return Quantity{}, fmt.Errorf("%q is not a whole number of bytes", text)
	}
	return Quantity{Text: text, Bytes: bytes}, nil
}

var maxQuantity = resource.MustParse("1Ei")

// jsonScalar returns a JSON string's text, or a JSON number as written.
func jsonScalar(data []byte) (string, error) {
	if len(data) > 0 && data[0] == '"' {
		var text string
		err := json.Unmarshal(data, &text)
		return text, err
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return "", err
	}
	return n.String(), nil
}
