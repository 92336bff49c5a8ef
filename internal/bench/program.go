package bench

import "os/exec"

// Program is a job the benchmarks run, and how the host runs it natively
// (the baseline): the same compiler and flags as the guest.
type Program struct {
	Name     string `json:"name"`
	Language string `json:"language"`
	Source   string `json:"source"`
	Code     string `json:"-"`
	Want     string `json:"-"` // its whole output
	// Commands compile and run it in a directory holding Source, on the
	// host or in a sandbox's root tree; the last one's output is the
	// program's.
	Commands [][]string `json:"-"`
}

// The programs: the seed's hello world in C, and in Python.
var (
	HelloCProgram = Program{Name: "hello.c", Language: "c", Source: "main.c", Code: HelloC, Want: "Hello, World!",
		Commands: [][]string{{"gcc", "-std=gnu17", "-o", "main", "main.c", "-lm"}, {"./main"}}}
	HelloPythonProgram = Program{Name: "hello.py", Language: "python", Source: "main.py", Code: `print("Hello, World!", end="")`, Want: "Hello, World!",
		Commands: [][]string{{"python3", "main.py"}}}
)

// HasNative reports whether the host has p's commands (a host without
// python3 has no Python baseline).
func (p Program) HasNative() bool {
	for _, argv := range p.Commands {
		if argv[0][0] == '.' {
			continue
		}
		if _, err := exec.LookPath(argv[0]); err != nil {
			return false
		}
	}
	return true
}
