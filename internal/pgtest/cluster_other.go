//go:build !unix

package pgtest

import "errors"

// cluster is a running ephemeral PostgreSQL cluster; there are none off Unix.
type cluster struct{ adminURL string }

func findBinDir() (string, error) {
	return "", &unavailableError{"set " + EnvURL + " to a server's connection string (ephemeral clusters need a Unix system)"}
}

func startCluster(string) (*cluster, error) { return nil, errors.New("unreachable") }

func (c *cluster) stop() error { return nil }

func (c *cluster) start() error { return errors.New("unreachable") }

func (c *cluster) kill() {}

func (c *cluster) shutdown() {}

func (c *cluster) running() bool { return false }
