package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// commands lists ohx's commands for `ohx help`, in the order a new operator needs them.
var commands = []struct{ name, summary string }{
	{"serve", "run the FHIR server (the default command)"},
	{"demo", "run ohx with simulated Withings, Google Health and Fitbit servers and print a guided start"},
	{"token", "print an access token of a backend client (the demo client by default)"},
	{"clients", "add, list or remove OAuth clients of the built-in authorization server"},
	{"users", "add, list or remove sign-in users (patients and practitioners)"},
	{"keys", "rotate the access-token signing key"},
	{"connections", "list patients' vendor connections (never their tokens)"},
	{"googlehealth", "manage the Google Health API webhook subscriber and subscriptions"},
	{"publish-jwks", "print the JWKS of OHX_PUBLISH_KEY_FILE, to register ohx with an EHR (SMART Backend Services)"},
	{"health", "check a running server's /healthz (a container HEALTHCHECK)"},
	{"version", "print the version"},
	{"help", "print this list"},
}

// printHelp writes the command list.
func printHelp(w io.Writer) {
	fmt.Fprintln(w, "ohx: a FHIR R5 server for patient-generated health data")
	fmt.Fprintln(w, "\nUsage: ohx [COMMAND] [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery setting is an OHX_… environment variable or the flag of the same name;")
	fmt.Fprintln(w, "`ohx COMMAND -h` lists a command's flags.")
}

// first is args[0], "" when there is none.
func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// parseFlags parses a command's flags. -h writes the command's flags to the set's output and
// returns flag.ErrHelp (ohx then exits 0). A wrong flag is one error line naming it and where
// help is, instead of the flag package's whole usage dump.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(out, "Usage: %s [flags]\n\nFlags:\n", fs.Name())
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	if err != nil {
		return fmt.Errorf("%w (see %s -h)", err, fs.Name())
	}
	return nil
}

// subcommandUsage is the error of a command group called without (or with an unknown)
// subcommand, or its help when help was asked for (returned as flag.ErrHelp after printing).
func subcommandUsage(stderr io.Writer, group string, subs []string, got string) error {
	usage := "usage: ohx " + group + " " + strings.Join(subs, "|") + " [flags]; `ohx " + group + " " + subs[0] + " -h` lists the flags"
	if isHelp(got) {
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	}
	if got == "" {
		return errors.New(usage)
	}
	return fmt.Errorf("unknown %s command %q (%s)", group, got, strings.Join(subs, ", "))
}
