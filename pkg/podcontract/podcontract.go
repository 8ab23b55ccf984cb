// Package podcontract is the contract between podipc's parts inside and around
// an injected pod: the annotations and labels the injector, the controller
// and users read and write, the names of what the injector adds, the paths of
// the shared tmpfs and of what lives in it, the environment variables the
// application containers get, and the sidecar's port.
//
// It is the one home of these values. The webhook, the controller, the
// sidecar, the examples and the Go clients import it; the C and Python
// clients mirror it, and the conformance tests hold them to the same values.
// docs/annotations.md and docs/architecture.md describe each.
package podcontract

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// The podipc.io annotations and labels.
const (
	// AnnotationInject turns injection on: "true" injects, "false" or absent
	// does not.
	AnnotationInject = "podipc.io/inject"
	// AnnotationChannels is an explicit, comma-separated list of IPCChannel
	// names; without it the pod gets every IPCChannel of its namespace whose
	// selector matches its labels.
	AnnotationChannels = "podipc.io/channels"
	// AnnotationContainers is a comma-separated list of the containers that get
	// the tmpfs mount and the PODIPC_* variables; default every container.
	AnnotationContainers = "podipc.io/containers"
	// AnnotationMountPath is where the tmpfs is mounted; default DefaultMountPath.
	AnnotationMountPath = "podipc.io/mount-path"
	// AnnotationTmpfsSize overrides the tmpfs sizeLimit (a quantity, "256Mi").
	AnnotationTmpfsSize = "podipc.io/tmpfs-size"
	// AnnotationMetricsPort is the sidecar's HTTP port; default DefaultMetricsPort.
	AnnotationMetricsPort = "podipc.io/metrics-port"
	// AnnotationDevShm, "true", also mounts the tmpfs at /dev/shm in the
	// selected containers, for shm_open-based libraries.
	AnnotationDevShm = "podipc.io/dev-shm"

	// AnnotationFileMode narrows the mode of the channel files and the
	// broker's socket from DefaultFileMode to "0660": only the containers of
	// the pod's fsGroup reach them. It needs spec.securityContext.fsGroup.
	AnnotationFileMode = "podipc.io/file-mode"
	// AnnotationConfig holds the pod's ChannelConfig document, written by the
	// injector and kept current by the controller; the sidecar reads it through
	// a downward-API file.
	AnnotationConfig = "podipc.io/config"
	// AnnotationStatus records what the injector did (a JSON document).
	AnnotationStatus = "podipc.io/status"

	// LabelInjected marks the pods the injector mutated, so the controller's
	// cache can watch those alone.
	LabelInjected = "podipc.io/injected"
	// LabelInjection, "disabled" on a namespace or a pod, keeps the webhook
	// from being called for it at all (the shipped webhook configuration's
	// namespace and object selectors).
	LabelInjection = "podipc.io/injection"
)

// Names of what the injector adds to a pod.
const (
	// SidecarName is the name of the injected sidecar container.
	SidecarName = "podipc-sidecar"
	// VolumeName is the tmpfs emptyDir volume.
	VolumeName = "podipc"
	// ConfigVolumeName is the downward-API volume with the channel configuration.
	ConfigVolumeName = "podipc-config"
	// NoTokenVolumeName is an empty read-only volume mounted over the
	// service-account token path in the sidecar: the ServiceAccount admission
	// plugin skips containers that already mount that path, so the sidecar
	// never holds Kubernetes credentials whatever the pod's
	// automountServiceAccountToken says.
	NoTokenVolumeName = "podipc-no-token"
	// MetricsPortName names the sidecar's HTTP port.
	MetricsPortName = "podipc-metrics"
	// DefaultMetricsPort is the sidecar's default HTTP port (metrics, health).
	DefaultMetricsPort = 9464
)

// Paths in the pod's containers.
const (
	// DefaultMountPath is where the tmpfs is mounted by default, in the
	// sidecar and in the application containers.
	DefaultMountPath = "/var/run/podipc"
	// DevShmPath is where AnnotationDevShm mounts the tmpfs too.
	DevShmPath = "/dev/shm"
	// ConfigDir is where the sidecar mounts ConfigVolumeName.
	ConfigDir = "/etc/podipc/config"
	// ConfigFile is the file, in ConfigDir, that holds AnnotationConfig.
	ConfigFile = "channels.yaml"
	// ServiceAccountTokenDir is where Kubernetes mounts a pod's
	// service-account credentials.
	ServiceAccountTokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// The layout of the podipc directory (the tmpfs).
const (
	// ShmSubdir holds the shared-memory channel files, one per channel, named
	// after the channel.
	ShmSubdir = "shm"
	// MQSocketName is the message broker's Unix socket.
	MQSocketName = "mq.sock"
	// JournalSubdir is where the broker keeps the journals of the queues
	// declared with one.
	JournalSubdir = "mq/journal"
)

// The environment variables set in the application containers.
const (
	// EnvDir is the podipc directory: where the tmpfs is mounted.
	EnvDir = "PODIPC_DIR"
	// EnvMQSocket is the broker's socket path.
	EnvMQSocket = "PODIPC_MQ_SOCKET"
	// EnvChannels lists the pod's channels, comma-separated.
	EnvChannels = "PODIPC_CHANNELS"
	// EnvBrokerUID is the UID the sidecar runs as: a client refuses a
	// broker socket served by any other user (an impostor).
	EnvBrokerUID = "PODIPC_BROKER_UID"
)

// SidecarUID is the UID (and GID) the injected sidecar runs as.
const SidecarUID = 65532

// DefaultFileMode is the mode of the channel files and the broker's socket.
// Every container of the pod may run under its own UID, and only the pod's
// containers that mount the tmpfs reach the files, so they are readable and
// writable by all; docs/security.md has the threat model.
const DefaultFileMode = 0o666

// ConfigPath is the sidecar's configuration file: ConfigFile in ConfigDir.
const ConfigPath = ConfigDir + "/" + ConfigFile

// ErrNoDir is returned when the process has no podipc directory in its
// environment.
var ErrNoDir = errors.New("podcontract: " + EnvDir + " is not set (it names the pod's podipc directory; the injector sets it)")

// Dir returns the podipc directory from $PODIPC_DIR.
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	return "", ErrNoDir
}

// ChannelPath is the file of the shared-memory channel name in the podipc
// directory dir.
func ChannelPath(dir, name string) string { return filepath.Join(dir, ShmSubdir, name) }

// MQSocketPath is the broker's socket in the podipc directory dir.
func MQSocketPath(dir string) string { return filepath.Join(dir, MQSocketName) }

// JournalDir is the broker's journal directory in the podipc directory dir.
func JournalDir(dir string) string { return filepath.Join(dir, JournalSubdir) }

// MQSocket returns the broker's socket path from the environment:
// $PODIPC_MQ_SOCKET if set, else mq.sock in $PODIPC_DIR.
func MQSocket() (string, error) {
	if p := os.Getenv(EnvMQSocket); p != "" {
		return p, nil
	}
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	return MQSocketPath(dir), nil
}

// BrokerUID returns the broker's UID from $PODIPC_BROKER_UID, and false if
// it is not set.
func BrokerUID() (int, bool, error) {
	v := os.Getenv(EnvBrokerUID)
	if v == "" {
		return 0, false, nil
	}
	uid, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, false, fmt.Errorf("podcontract: %s=%q is not a UID", EnvBrokerUID, v)
	}
	return int(uid), true, nil
}
