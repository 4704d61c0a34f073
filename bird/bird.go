// Package bird holds roost's BIRD 2 configuration templates. It is a Go
// package only so that the templates can be embedded with //go:embed; the
// view model that feeds them and the rendering live in internal/birdconf.
//
// The templates only range over and print what they are given: every
// decision (sorting, validation, formatting of addresses) is made in Go.
package bird

import "embed"

// Templates holds every template of this directory (*.tmpl).
//
//go:embed *.tmpl
var Templates embed.FS

// ConfigTemplate is the name, within Templates, of the template that renders
// bird.conf, the file BIRD is started with.
const ConfigTemplate = "bird.conf.tmpl"
