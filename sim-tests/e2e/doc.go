// Package e2e holds end-to-end tests that run real servers and real clients over KCP on
// 127.0.0.1 in one test process.
package e2e
