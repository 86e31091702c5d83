// Package codeshape holds repository-wide shape tests: checks over the source
// of every package in the module (such as how long a function may be) rather
// than over what any one package does. It has no non-test code.
package codeshape
