package injection

import (
	"encoding/json"
	"fmt"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
)

// Status is the value of the podipc.io/status annotation: what the injector
// did to the pod, kept current by the controller when it pushes channels.
type Status struct {
	// Version is the injector's version.
	Version string `json:"version"`
	// Channels are the channels in podipc.io/config, sorted.
	Channels []string `json:"channels"`
	// Missing are the channels podipc.io/channels names that do not exist
	// yet; the controller adds them when they appear.
	Missing []string `json:"missing,omitempty"`
	// Rejected are the channels left out, and why.
	Rejected []RejectedChannel `json:"rejected,omitempty"`
	// TmpfsBytes is the tmpfs sizeLimit.
	TmpfsBytes int64 `json:"tmpfsBytes"`
	// ChannelBudgetBytes is how much of the tmpfs channels may use: the
	// sizeLimit less the headroom. The controller pushes no channel past it.
	ChannelBudgetBytes int64 `json:"channelBudgetBytes"`
	// QueueMemoryBudgetBytes is how much sidecar memory the message queues
	// may hold: their in-memory bound at admission, which the sidecar's memory
	// limit includes. The controller pushes no queue past it. Nil in the
	// status of a pod injected by an older injector, which did not budget
	// queue memory: its queues are then held to the tmpfs only, as before.
	QueueMemoryBudgetBytes *int64 `json:"queueMemoryBudgetBytes,omitempty"`
	// ConfigHash is Config.Hash of podipc.io/config.
	ConfigHash string `json:"configHash"`
}

// ReadStatus reads a pod's podipc.io/status annotation. ok is false when the
// pod has none.
func ReadStatus(pod *corev1.Pod) (st Status, ok bool, err error) {
	v, ok := pod.Annotations[podcontract.AnnotationStatus]
	if !ok {
		return Status{}, false, nil
	}
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		return Status{}, true, fmt.Errorf("annotation %s: %w", podcontract.AnnotationStatus, err)
	}
	return st, true, nil
}

// Encode is the status as the value of the podipc.io/status annotation.
func (s *Status) Encode() string {
	data, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("injection: encode status: %v", err)) // strings, ints and slices always encode
	}
	return string(data)
}

// IsInjected reports whether the injector has already mutated the pod: it
// carries a readable status annotation and the sidecar.
func IsInjected(pod *corev1.Pod) bool {
	if _, ok, err := ReadStatus(pod); !ok || err != nil {
		return false
	}
	return hasSidecar(pod)
}

func hasSidecar(pod *corev1.Pod) bool {
	return ContainerIndex(pod.Spec.InitContainers, podcontract.SidecarName) >= 0 || ContainerIndex(pod.Spec.Containers, podcontract.SidecarName) >= 0
}

// ContainerIndex is the index of the container named name in cs, or -1: how
// the sidecar and the containers podipc.io/containers names are found.
func ContainerIndex(cs []corev1.Container, name string) int {
	for i := range cs {
		if cs[i].Name == name {
			return i
		}
	}
	return -1
}
