{{/*
Labels every object carries; with the defaults they equal the kustomize
bases' labels (the packaging tests compare the two as data).
*/}}
{{- define "netprobe.labels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/part-of: netprobe
{{- end }}

{{- define "netprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
{{- end }}

{{/*
Whether the Prometheus Operator's API is there to take ServiceMonitors and
PrometheusRules: asked of the cluster, or forced by
monitoring.assumeOperatorApi (helm template, GitOps renderers).
*/}}
{{- define "netprobe.monitoringApi" -}}
{{- if or .Values.monitoring.assumeOperatorApi (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
true
{{- end -}}
{{- end }}
