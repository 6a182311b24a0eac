package partitioner

import "errors"

// ErrInvalidConfig is wrapped by every error Config.Validate (and so New) returns.
var ErrInvalidConfig = errors.New("partitioner: invalid config")

// configError is one bad Config field. Its message names the field and the bound it breaks
// ("partitioner: SplitLoad (0) must be ≥ 1"); errors.Is(err, ErrInvalidConfig) holds.
type configError struct{ msg string }

func (e *configError) Error() string { return "partitioner: " + e.msg }
func (e *configError) Unwrap() error { return ErrInvalidConfig }
