package v1alpha1

import (
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podipc/podipc/pkg/channelconfig"
)

// The rules of the CRD's schema and CEL, in Go: those of the settings are
// pkg/channelconfig's (its Msg constants are the CEL rules' messages), applied
// to the settings converted to its model; this file adds what only an
// IPCChannel has, its metadata.name and its selector.

// ValidateIPCChannel checks a defaulted IPCChannel against the rules the API
// server enforces through the CRD schema.
func ValidateIPCChannel(c *IPCChannel) field.ErrorList {
	allErrs := channelconfig.ValidateName(c.Name, field.NewPath("metadata", "name"))
	spec := field.NewPath("spec")
	if c.Spec.Selector != nil {
		opts := metav1validation.LabelSelectorValidationOptions{}
		allErrs = append(allErrs, metav1validation.ValidateLabelSelector(c.Spec.Selector, opts, spec.Child("selector"))...)
	}
	settings := c.Spec.ChannelSettings.Model()
	allErrs = append(allErrs, channelconfig.ValidateChannelSettings(&settings, spec)...)
	return append(allErrs, channelconfig.ValidateNotOwnDeadLetterQueue(c.Name, &settings, spec)...)
}

// ValidateIPCChannelUpdate checks an update of an IPCChannel: the new object
// must be valid and must not change an immutable field.
func ValidateIPCChannelUpdate(newChannel, oldChannel *IPCChannel) field.ErrorList {
	allErrs := ValidateIPCChannel(newChannel)
	newSettings, oldSettings := newChannel.Spec.ChannelSettings.Model(), oldChannel.Spec.ChannelSettings.Model()
	return append(allErrs, channelconfig.ValidateChannelSettingsUpdate(&newSettings, &oldSettings, field.NewPath("spec"))...)
}
