// Command ohx is the Open Health Exchange server: a FHIR R5 facade for patient-generated health data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	_ "time/tzdata" // vendor time zones resolve even on hosts without a zoneinfo database
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// The help asked for is printed; that is a success.
	case err != nil:
		fmt.Fprintln(os.Stderr, "ohx:", err)
		os.Exit(1)
	}
}
