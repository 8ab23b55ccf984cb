// Package testkit is the scaffolding podipc's tests share: child processes
// (the test binary re-executed to play a role, or a real command), polling
// with a deadline, and directories on a real tmpfs. Only _test.go files
// import it; product code never does.
//
// A test package whose tests start children runs them from TestMain:
//
//	func TestMain(m *testing.M) {
//		testkit.Main(m, testkit.Roles{"producer": produce})
//	}
//
// and a test starts one with testkit.Child(t, "producer", testkit.Env(...)).
// Every child the kit starts gets SIGKILL when the test process dies
// (Pdeathsig), is killed and reaped when its test ends, and has its output
// captured and logged if the test failed.
package testkit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// Environment variables a parent passes to a child it re-executes.
const (
	roleEnv = "PODIPC_TESTKIT_ROLE"
	uidEnv  = "PODIPC_TESTKIT_UID"
)

// Roles maps a role's name to what a child playing it runs. A role gets the
// arguments its child was started with (see SelfCommand) and returns nil for
// exit status 0, Exit(code) for that status, or an error, which is printed
// to stderr as "role: error" with exit status 1.
type Roles map[string]func(args []string) error

// Main is the body of TestMain: in a child started by Child or SelfCommand
// it runs the child's role and exits; otherwise it runs the tests.
func Main(m *testing.M, roles Roles) {
	role, ok := os.LookupEnv(roleEnv)
	if !ok {
		os.Exit(m.Run())
	}
	os.Exit(runRole(role, roles))
}

func runRole(role string, roles Roles) int {
	uid := os.Getenv(uidEnv)
	// A child's own children are not that role unless they are made so.
	os.Unsetenv(roleEnv)
	os.Unsetenv(uidEnv)
	run, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "testkit: unknown child role %q\n", role)
		return 2
	}
	if uid != "" {
		id, err := strconv.Atoi(uid)
		if err == nil {
			err = DropPrivileges(id)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "testkit: %s: drop to UID %s: %v\n", role, uid, err)
			return 3
		}
	}
	err := run(roleArgs(os.Args[1:]))
	var code exitCode
	switch {
	case errors.As(err, &code):
		return int(code)
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}

// roleArgs strips the arguments SelfCommand puts before the role's own.
func roleArgs(args []string) []string {
	if len(args) >= len(selfArgs) && args[0] == selfArgs[0] && args[1] == selfArgs[1] {
		return args[len(selfArgs):]
	}
	return args
}

// exitCode is an exit status a role asks for.
type exitCode int

func (c exitCode) Error() string { return "exit status " + strconv.Itoa(int(c)) }

// Exit is what a role returns to make its process exit with status code
// without printing anything: nil for 0.
func Exit(code int) error {
	if code == 0 {
		return nil
	}
	return exitCode(code)
}

// DropPrivileges switches the calling process to UID and GID uid, with no
// supplementary groups. The process must be root.
func DropPrivileges(uid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setgid(uid); err != nil {
		return err
	}
	return syscall.Setuid(uid)
}
