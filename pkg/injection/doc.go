// Package injection is the contract between the injector's webhook and its
// controller: what a pod's podipc.io annotations ask for and what the
// injector wrote back into them.
//
// ParseOptions and WantsInjection read the annotations a user sets (an
// invalid value is an *AnnotationError); SelectChannels and ChannelApplies
// decide which IPCChannels a pod gets; BuildConfig makes the value of
// podipc.io/config from them; Status, ReadStatus and IsInjected are the
// podipc.io/status annotation the webhook records; Reconfigure is what the
// controller writes into both when a running pod's IPCChannels change.
// pkg/webhook's Mutate and internal/controller both build on it, so that
// admission and reconciliation apply one rule.
//
// The annotation names themselves are in pkg/podcontract; every podipc.io
// annotation is described in docs/annotations.md.
package injection
