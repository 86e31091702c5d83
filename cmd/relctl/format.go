package main

import (
	"encoding/json"
	"io"
)

func checkFormat(format string) error {
	switch format {
	case "text", "json":
		return nil
	}
	return usageErrorf("invalid --output %q (use text or json)", format)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
