package metrics

import "testing"

func TestLabelsFromFixedSets(t *testing.T) {
	for in, want := range map[string]string{
		"GET": "GET", "POST": "POST", "OPTIONS": "OPTIONS", "get": "other", "INVENTED": "other", "": "other",
	} {
		if got := methodLabel(in); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"0": "0", "none": "none", "45009": "45009", "48001": "48001", "40164": "40164",
		"12345": "other", "-99": "other", "": "other",
	} {
		if got := errcodeLabel(in); got != want {
			t.Errorf("errcodeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
