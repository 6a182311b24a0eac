// Package datadriven runs data-driven test scripts, in the style of cockroachdb/pebble's
// datadriven package: a script (a testdata/*.txt file) is a list of blocks
//
//	# comments and blank lines are kept as they are
//	command key=value ...
//	----
//	<the expected output, up to a blank line or the end of the file>
//
// The package owns the script format (parsing, comparing, regenerating with the -rewrite flag
// it registers) and reading a command's key=value arguments (Args). What the commands mean
// and how their outputs are rendered belongs to each package's test.
//
// It is for tests only: production code must not import it (it imports testing and registers
// a command-line flag); TestOnlyTestsImport checks that.
package datadriven
