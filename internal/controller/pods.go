package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/injection"
)

// Event reasons on pods.
const (
	ReasonConfigUpdated    = "ChannelConfigUpdated"
	ReasonChannelsMissing  = "ChannelsMissing"
	ReasonChannelsRejected = "ChannelsRejected"
	ReasonInvalidPod       = "InvalidPodipcAnnotation"
)

// PodConfigReconciler keeps the podipc.io/config annotation of each injected
// pod equal to what its IPCChannels say now (injection.Reconfigure). The kubelet
// projects the annotation into the sidecar, which reconciles its channels.
type PodConfigReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler: every injected pod, and every
// injected pod of a namespace whose IPCChannels change.
func (r *PodConfigReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := ctrl.NewControllerManagedBy(mgr).
		Named("pod-config").
		// Pod status updates (the kubelet's, frequent) do not change a pod's
		// channels; label and annotation changes do.
		For(&corev1.Pod{}, builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Only spec changes, creations and deletions of channels matter to pods;
		// status updates (the other controller's) do not bump the generation.
		Watches(&v1alpha1.IPCChannel{}, handler.EnqueueRequestsFromMapFunc(r.podsOfNamespace),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
	if err != nil {
		return fmt.Errorf("set up the pod config controller: %w", err)
	}
	return nil
}

func (r *PodConfigReconciler) podsOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(o.GetNamespace()), client.MatchingLabelsSelector{Selector: injectedPods}); err != nil {
		logf.FromContext(ctx).Error(err, "cannot list injected pods", "namespace", o.GetNamespace())
		return nil
	}
	reqs := make([]reconcile.Request, len(pods.Items))
	for i := range pods.Items {
		reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pods.Items[i].Namespace, Name: pods.Items[i].Name}}
	}
	return reqs
}

// Reconcile pushes the pod's current channel configuration.
func (r *PodConfigReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pod corev1.Pod
	if err := r.Client.Get(ctx, req.NamespacedName, &pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pod.DeletionTimestamp != nil || podFinished(&pod) {
		return ctrl.Result{}, nil
	}
	var channels v1alpha1.IPCChannelList
	if err := r.Client.List(ctx, &channels, client.InNamespace(pod.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("list IPCChannels in %s: %w", pod.Namespace, err)
	}
	next, err := injection.Reconfigure(&pod, channels.Items)
	if errors.Is(err, injection.ErrNotInjected) {
		return ctrl.Result{}, nil
	}
	if err != nil {
		// The pod's annotations were edited into something invalid; a new
		// edit triggers another reconcile.
		r.Recorder.Eventf(&pod, nil, corev1.EventTypeWarning, ReasonInvalidPod, "Reconfigure", "%v", err)
		return ctrl.Result{}, nil
	}
	if !next.Changed {
		return ctrl.Result{}, nil
	}
	before, _, _ := injection.ReadStatus(&pod)
	patch := client.MergeFromWithOptions(pod.DeepCopy(), client.MergeFromWithOptimisticLock{})
	for k, v := range next.Annotations() {
		pod.Annotations[k] = v
	}
	if err := r.Client.Patch(ctx, &pod, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return ctrl.Result{}, fmt.Errorf("patch %s of pod %s: %w", podcontract.AnnotationConfig, req.NamespacedName, err)
	}
	st := next.Status
	logf.FromContext(ctx).Info("pushed channel configuration", "channels", st.Channels, "missing", st.Missing, "configHash", st.ConfigHash)
	r.Recorder.Eventf(&pod, nil, corev1.EventTypeNormal, ReasonConfigUpdated, "Reconfigure", "channels now: %s", orNone(st.Channels))
	if len(st.Missing) > 0 && !slices.Equal(st.Missing, before.Missing) {
		r.Recorder.Eventf(&pod, nil, corev1.EventTypeWarning, ReasonChannelsMissing, "Reconfigure",
			"IPCChannels named in %s do not exist: %s", podcontract.AnnotationChannels, strings.Join(st.Missing, ", "))
	}
	if len(st.Rejected) > 0 && !slices.Equal(st.Rejected, before.Rejected) {
		var parts []string
		for _, rc := range st.Rejected {
			parts = append(parts, rc.Name+": "+rc.Reason)
		}
		r.Recorder.Eventf(&pod, nil, corev1.EventTypeWarning, ReasonChannelsRejected, "Reconfigure", "channels left out: %s", strings.Join(parts, "; "))
	}
	return ctrl.Result{}, nil
}

func podFinished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
