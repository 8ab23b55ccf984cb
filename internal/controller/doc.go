// Package controller holds the injector's controllers: PodConfigReconciler
// pushes IPCChannel changes into the podipc.io/config annotation of running
// injected pods, and ChannelStatusReconciler keeps each IPCChannel's status
// (Valid and Ready conditions, matched and ready pod counts). Both read
// through the manager's cache, whose pods are only the injected ones
// (CacheOptions), and run on the leader only.
package controller

import (
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// conflictRetry is how soon a write that lost an optimistic-concurrency race
// is retried, with the cache by then holding the newer object.
const conflictRetry = 200 * time.Millisecond

// injectedPods selects the pods the webhook injected.
var injectedPods = labels.SelectorFromSet(labels.Set{podcontract.LabelInjected: "true"})

// PodCacheConfig restricts the manager's pod informer to injected pods, so
// the cache holds those alone however large the cluster, and drops their
// managed fields.
func PodCacheConfig() (client.Object, cache.ByObject) {
	return &corev1.Pod{}, cache.ByObject{Label: injectedPods, Transform: cache.TransformStripManagedFields()}
}
