package spec

import "encoding/json"

func toJSON(v any) (string, error) {
	data, err := json.Marshal(v)
	return string(data), err
}
