package phonetic

import "testing"

func TestSoundex(t *testing.T) {
	tests := []struct{ in, want string }{
		{"robert", "R163"}, {"rupert", "R163"}, {"smith", "S530"}, {"smyth", "S530"},
		{"ashcraft", "A261"}, {"tymczak", "T522"}, {"pfister", "P236"}, {"lee", "L000"}, {"", ""}, {"o brien", "O165"},
	}
	for _, tt := range tests {
		if got := Soundex(tt.in); got != tt.want {
			t.Errorf("Soundex(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNYSIIS(t *testing.T) {
	same := [][2]string{{"brown", "braun"}, {"johnson", "jonson"}, {"carl", "karl"}, {"macdonald", "mcdonald"}, {"knight", "night"}, {"phillips", "filips"}}
	for _, p := range same {
		if a, b := NYSIIS(p[0]), NYSIIS(p[1]); a != b || a == "" {
			t.Errorf("NYSIIS(%q) = %q, NYSIIS(%q) = %q; want equal", p[0], a, p[1], b)
		}
	}
	if NYSIIS("smith") == NYSIIS("jones") {
		t.Error("smith and jones share a code")
	}
	if NYSIIS("") != "" || len(NYSIIS("wolfeschlegelsteinhausen")) > 6 {
		t.Error("edge cases")
	}
}
