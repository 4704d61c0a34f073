package endpoints

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/roost-net/roost/internal/policy"
)

// IsPolicyFile reports whether a directory entry named name is read by
// LoadPolicyDir: it ends in .yaml or .yml and does not start with '.'.
// A watcher can use it to ignore changes to other files.
func IsPolicyFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// LoadPolicyDir parses every policy file of dir (see IsPolicyFile) in name
// order with policy.Parse, the file's path as source. Hidden files are
// skipped: editors' temporary files and the "..data" directory of a
// Kubernetes ConfigMap mount start with '.'; symbolic links are followed.
// Other files are ignored. A directory with no policy files is no policies.
//
// The policies come back in file order. If any file is wrong, or one policy
// (namespace/name) is defined twice, LoadPolicyDir returns no policies and
// an error joining the problems of every file; policy.Parse's errors are
// *policy.FieldError. A missing or unreadable dir is an error naming it.
func LoadPolicyDir(dir string) ([]policy.Policy, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read policy directory: %w", err)
	}
	var (
		out   []policy.Policy
		errs  []error
		first = make(map[string]policy.Policy)
	)
	for _, e := range entries {
		if !IsPolicyFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		pols, err := parsePolicyFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range pols {
			if f, dup := first[p.ID()]; dup {
				errs = append(errs, fmt.Errorf("%s:%d: policy %q is already defined at %s:%d", p.File, p.Line, p.ID(), f.File, f.Line))
				continue
			}
			first[p.ID()] = p
			out = append(out, p)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// parsePolicyFile parses one policy file.
func parsePolicyFile(path string) ([]policy.Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("policy file %s is not a regular file (%s); remove it or rename it so that it does not end in .yaml or .yml", path, st.Mode().Type())
	}
	return policy.Parse(f, path)
}
