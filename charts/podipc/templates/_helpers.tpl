{{/* Name of the chart, or nameOverride. */}}
{{- define "podipc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: fullnameOverride, else the release name (with the chart name
appended unless the release name already contains it). Kept to 48 characters so that suffixes
such as "-webhook-tls" still fit in 63.
*/}}
{{- define "podipc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "podipc.injector.fullname" -}}
{{- printf "%s-injector" (include "podipc.fullname" .) }}
{{- end }}

{{- define "podipc.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "podipc.fullname" .) }}
{{- end }}

{{- define "podipc.webhook.configName" -}}
{{- include "podipc.fullname" . }}
{{- end }}

{{- define "podipc.webhook.secretName" -}}
{{- default (printf "%s-webhook-tls" (include "podipc.fullname" .)) .Values.certificates.secretName }}
{{- end }}

{{- define "podipc.injector.serviceAccountName" -}}
{{- if .Values.injector.serviceAccount.create }}
{{- default (include "podipc.injector.fullname" .) .Values.injector.serviceAccount.name }}
{{- else }}
{{- required "injector.serviceAccount.name is required when injector.serviceAccount.create is false" .Values.injector.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "podipc.leaderElectionID" -}}
{{- printf "%s-injector-leader" (include "podipc.fullname" .) }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "podipc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "podipc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podipc
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the injector's pods. */}}
{{- define "podipc.injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podipc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end }}

{{- define "podipc.injector.labels" -}}
{{ include "podipc.labels" . }}
app.kubernetes.io/component: injector
{{- end }}

{{/* An image reference from {repository, tag, digest}: the digest wins, the tag defaults to appVersion. */}}
{{- define "podipc.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
Namespaces the webhook never sees: kube-system, the release namespace (the injector must never
depend on itself to start) and webhook.excludeNamespaces, sorted and without duplicates.
*/}}
{{- define "podipc.webhook.excludedNamespaces" -}}
{{- $ns := list "kube-system" .Release.Namespace }}
{{- $ns = concat $ns .Values.webhook.excludeNamespaces }}
{{- toJson ($ns | uniq | sortAlpha) }}
{{- end }}

{{/* The injector's cert mode flag value from certificates.mode. */}}
{{- define "podipc.certMode" -}}
{{- if eq .Values.certificates.mode "certManager" }}cert-manager{{ else }}self{{ end }}
{{- end }}

{{- define "podipc.certManager.certificateName" -}}
{{- printf "%s-webhook" (include "podipc.fullname" .) }}
{{- end }}
