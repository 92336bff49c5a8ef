package image

import "github.com/codebench/codebench/internal/lang"

// ForLanguages loads the image a configuration names: ref (a hash or a
// directory) when set, else the last image built for the language profile
// languages (CODEBENCH_LANGUAGES).
func ForLanguages(dataDir, ref, languages string) (*Image, error) {
	if ref != "" {
		return Resolve(dataDir, ref, "")
	}
	_, key, err := lang.Builtin().Profile(languages)
	if err != nil {
		return nil, err
	}
	return Resolve(dataDir, "", key)
}
