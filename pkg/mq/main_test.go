package mq

import (
	"fmt"
	"os"
	"testing"
)

// roleEnv names the child role a re-executed test binary plays in the
// multi-process tests (see multiprocess_test.go).
const roleEnv = "MQ_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := runRole(role); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
