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

{{/*
Whether /metrics is served over HTTPS: always with token review (tokens
never travel in clear), or when a certificate Secret is given.
*/}}
{{- define "netprobe.https" -}}
{{- if or (eq .Values.metrics.auth "kubernetes") .Values.metrics.tls.secretName -}}
true
{{- end -}}
{{- end }}

{{- define "netprobe.probeScheme" -}}
{{- if include "netprobe.https" . }}HTTPS{{ else }}HTTP{{ end -}}
{{- end }}

{{/* Arguments, volume and mount of the metrics certificate Secret. */}}
{{- define "netprobe.tlsArgs" -}}
{{- if .Values.metrics.tls.secretName }}
- --metrics-tls-cert=/etc/netprobe/metrics-tls/tls.crt
- --metrics-tls-key=/etc/netprobe/metrics-tls/tls.key
{{- end }}
{{- end }}

{{- define "netprobe.tlsMount" -}}
{{- if .Values.metrics.tls.secretName }}
- name: metrics-tls
  mountPath: /etc/netprobe/metrics-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "netprobe.tlsVolume" -}}
{{- if .Values.metrics.tls.secretName }}
- name: metrics-tls
  secret:
    secretName: {{ .Values.metrics.tls.secretName }}
{{- end }}
{{- end }}
