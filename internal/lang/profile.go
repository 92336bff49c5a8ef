package lang

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Profiles name sets of languages an image is built from. "default" is
// small and quick to build (the demo's); "all" is every language in the
// table. Anything else is a comma-separated list of names.
const (
	ProfileDefault = "default"
	ProfileAll     = "all"
)

// defaultProfile is the first release's eight languages.
var defaultProfile = []string{"bash", "c", "cpp", "go", "java", "javascript", "python", "rust"}

// Profile returns the languages spec names (a profile's name or a list of
// language names) and the key its image is linked under.
func (t Table) Profile(spec string) (Table, string, error) {
	spec = strings.TrimSpace(spec)
	var names []string
	switch spec {
	case "", ProfileDefault:
		spec, names = ProfileDefault, defaultProfile
	case ProfileAll:
		names = t.Names()
	default:
		for _, n := range strings.Split(spec, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	sub := Table{}
	for _, n := range names {
		l, ok := t[n]
		if !ok {
			return nil, "", fmt.Errorf("unknown language %q (have %s; or a profile: %s, %s)", n,
				strings.Join(t.Names(), ", "), ProfileDefault, ProfileAll)
		}
		sub[n] = l
	}
	if len(sub) == 0 {
		return nil, "", fmt.Errorf("language profile %q names no language", spec)
	}
	key := spec
	if spec != ProfileDefault && spec != ProfileAll {
		sorted := sub.Names()
		sum := sha256.Sum256([]byte(strings.Join(sorted, ",")))
		key = "list-" + hex.EncodeToString(sum[:6])
	}
	return sub, key, nil
}
