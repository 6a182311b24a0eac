package cellserver

import (
	"errors"
	"fmt"
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns; test it with errors.Is.
var ErrInvalidConfig = errors.New("cellserver: invalid config")

// ConfigError names the configuration field that is out of bounds and the bound it breaks.
type ConfigError struct {
	Field string // e.g. "AOILeaveRadius"
	Value string // the offending value, formatted
	Rule  string // e.g. "must be > AOIEnterRadius (50)"
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("cellserver: %s (%s) %s", e.Field, e.Value, e.Rule)
}

// Is reports ErrInvalidConfig as the error's kind.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configErr(field string, value any, format string, args ...any) error {
	return &ConfigError{Field: field, Value: fmt.Sprint(value), Rule: fmt.Sprintf(format, args...)}
}

// Errors of World.Import and the cluster member.
var (
	// ErrBadImport: an imported entity's state is invalid (outside the world, bad velocity).
	ErrBadImport = errors.New("cellserver: bad entity import")
	// ErrDuplicateEntity: an imported entity is already in the World.
	ErrDuplicateEntity = errors.New("cellserver: entity already present")
	// ErrServerFull: no room for another client.
	ErrServerFull = errors.New("cellserver: server full")
	// ErrNotGhost: a ghost operation on an entity that is real here.
	ErrNotGhost = errors.New("cellserver: entity is real here, not a ghost")
)
