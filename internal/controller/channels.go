package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podipc/podipc/api/v1alpha1"
	"github.com/podipc/podipc/pkg/injection"
)

// ChannelStatusReconciler keeps the status of each IPCChannel: Valid (the
// rules that span channels, which the API server cannot check), the number
// of running injected pods the channel applies to (matchedPods), how many of
// those have it in their configuration and a ready sidecar (readyPods), and
// Ready when they all do.
type ChannelStatusReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler: each IPCChannel, again when any
// IPCChannel of its namespace changes (a dead-letter queue may appear) and
// when an injected pod of its namespace changes.
func (r *ChannelStatusReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := ctrl.NewControllerManagedBy(mgr).
		Named("ipcchannel-status").
		// Its own status writes bump no generation and need no reconcile.
		For(&v1alpha1.IPCChannel{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.IPCChannel{}, handler.EnqueueRequestsFromMapFunc(r.channelsOfNamespace),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Pod events are many; counts may lag by StatusBatchDelay, so a burst of
		// pod creations costs one reconcile per channel, not one per pod.
		Watches(&corev1.Pod{}, r.delayedChannelsOfNamespace(), builder.WithPredicates(podCountsChanged)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("set up the IPCChannel status controller: %w", err)
	}
	return nil
}

func (r *ChannelStatusReconciler) channelsOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.IPCChannelList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		logf.FromContext(ctx).Error(err, "cannot list IPCChannels", "namespace", o.GetNamespace())
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}}
	}
	return reqs
}

// StatusBatchDelay is how long pod events are collected before the counts of
// the channels of their namespace are computed again.
const StatusBatchDelay = time.Second

func (r *ChannelStatusReconciler) delayedChannelsOfNamespace() handler.EventHandler {
	enqueue := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range r.channelsOfNamespace(ctx, o) {
			q.AddAfter(req, StatusBatchDelay) // a request already waiting is not added twice
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q)
		},
	}
}

// Reconcile computes and writes the channel's status.
func (r *ChannelStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ch v1alpha1.IPCChannel
	if err := r.Client.Get(ctx, req.NamespacedName, &ch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if ch.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	var channels v1alpha1.IPCChannelList
	if err := r.Client.List(ctx, &channels, client.InNamespace(ch.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("list IPCChannels in %s: %w", ch.Namespace, err)
	}
	var pods corev1.PodList
	// Read only: the cache's objects are not copied.
	if err := r.Client.List(ctx, &pods, client.InNamespace(ch.Namespace), client.MatchingLabelsSelector{Selector: injectedPods}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("list injected pods in %s: %w", ch.Namespace, err)
	}

	status := ch.Status.DeepCopy()
	status.ObservedGeneration = ch.Generation
	meta.SetStatusCondition(&status.Conditions, validCondition(&ch, channels.Items))
	status.MatchedPods, status.ReadyPods = countPods(&ch, pods.Items)
	meta.SetStatusCondition(&status.Conditions, readyCondition(status.MatchedPods, status.ReadyPods))
	for i := range status.Conditions {
		status.Conditions[i].ObservedGeneration = ch.Generation
	}
	if equalStatus(&ch.Status, status) {
		return ctrl.Result{}, nil
	}
	ch.Status = *status
	if err := r.Client.Status().Update(ctx, &ch); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("update status of IPCChannel %s: %w", req.NamespacedName, err))
	}
	return ctrl.Result{}, nil
}

// podCountsChanged passes the pod events that can change a channel's
// counts: creations, deletions, and updates of what countPods reads.
var podCountsChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	old, okOld := e.ObjectOld.(*corev1.Pod)
	cur, okNew := e.ObjectNew.(*corev1.Pod)
	if !okOld || !okNew {
		return true
	}
	return !maps.Equal(old.Labels, cur.Labels) ||
		old.Annotations[podcontract.AnnotationStatus] != cur.Annotations[podcontract.AnnotationStatus] ||
		old.Annotations[podcontract.AnnotationChannels] != cur.Annotations[podcontract.AnnotationChannels] ||
		old.Status.Phase != cur.Status.Phase ||
		(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) ||
		sidecarReady(old) != sidecarReady(cur)
}}

// validCondition checks what the API server's schema cannot: rules over the
// other channels of the namespace, and the schema's rules again for objects
// stored before a rule existed.
func validCondition(ch *v1alpha1.IPCChannel, all []v1alpha1.IPCChannel) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionValid, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValid, Message: "the channel is valid"}
	defaulted := ch.DeepCopy()
	defaulted.Default()
	if errs := v1alpha1.ValidateIPCChannel(defaulted); len(errs) > 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, errs.ToAggregate().Error()
		return c
	}
	if mq := ch.Spec.MessageQueue; ch.Spec.Type == v1alpha1.ChannelTypeMessageQueue && mq != nil && mq.DeadLetterQueue != "" {
		found := slices.ContainsFunc(all, func(o v1alpha1.IPCChannel) bool {
			return o.Name == mq.DeadLetterQueue && o.Spec.Type == v1alpha1.ChannelTypeMessageQueue && o.DeletionTimestamp == nil
		})
		if !found {
			c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonDeadLetterQueueNotFound
			c.Message = fmt.Sprintf("deadLetterQueue %q names no IPCChannel of type MessageQueue in namespace %s; pods get this channel only once it exists", mq.DeadLetterQueue, ch.Namespace)
		}
	}
	return c
}

// countPods counts the running injected pods the channel applies to and,
// of those, the ones that have it in their configuration and whose sidecar
// is ready.
func countPods(ch *v1alpha1.IPCChannel, pods []corev1.Pod) (matched, ready int32) {
	for i := range pods {
		pod := &pods[i]
		if pod.DeletionTimestamp != nil || podFinished(pod) || !injection.ChannelApplies(pod, ch) {
			continue
		}
		matched++
		st, ok, err := injection.ReadStatus(pod)
		if ok && err == nil && slices.Contains(st.Channels, ch.Name) && sidecarReady(pod) {
			ready++
		}
	}
	return matched, ready
}

func sidecarReady(pod *corev1.Pod) bool {
	for _, cs := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		if cs.Name == podcontract.SidecarName {
			return cs.Ready
		}
	}
	return false
}

func readyCondition(matched, ready int32) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionReady}
	switch {
	case matched == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonNoMatchingPods, "no running injected pod gets this channel"
	case ready < matched:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonPodsNotReady, fmt.Sprintf("%d of %d pods have the channel ready", ready, matched)
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonAllPodsReady, fmt.Sprintf("all %d pods have the channel ready", matched)
	}
	return c
}

// equalStatus compares statuses ignoring condition transition times, which
// SetStatusCondition keeps when nothing else changed.
func equalStatus(a, b *v1alpha1.IPCChannelStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.MatchedPods != b.MatchedPods || a.ReadyPods != b.ReadyPods || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for _, ca := range a.Conditions {
		cb := meta.FindStatusCondition(b.Conditions, ca.Type)
		if cb == nil || ca.Status != cb.Status || ca.Reason != cb.Reason || ca.Message != cb.Message || ca.ObservedGeneration != cb.ObservedGeneration {
			return false
		}
	}
	return true
}
