package inspect

import (
	"regexp"

	"github.com/roost-net/roost/internal/agentapi"
)

// passwordRE matches the string of a BIRD "password" statement. BIRD 2.0
// strings have no escapes and end at the line's end at the latest, so the
// string is everything up to the next '"' or newline; an unterminated one is
// redacted to the end of its line.
var passwordRE = regexp.MustCompile(`(?i)(\bpassword\s+")[^"\n]*("?)`)

// RedactBirdConfig returns conf with the string of every BIRD
// `password "…"` statement replaced by agentapi.Redacted, so that a config
// can be shown, and compared with a redacted one, without its secrets.
// Everything else is left byte for byte; conf is not modified.
func RedactBirdConfig(conf []byte) []byte {
	return passwordRE.ReplaceAll(conf, []byte("${1}"+agentapi.Redacted+"${2}"))
}
