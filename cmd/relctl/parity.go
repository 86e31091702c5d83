package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newParityCmd compares two environments' fingerprints (being written).
func newParityCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "parity --env A --env B",
		Short:   "Compare two environments: roles, OS, watchdog, current release, release files",
		Example: `  relctl parity --env staging --env production`,
		Hidden:  true,
		RunE:    func(*cobra.Command, []string) error { return errors.New("parity: not built yet") },
	}
}
