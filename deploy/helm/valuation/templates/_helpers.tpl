{{/* The release's full name, cut to the 63 characters a DNS label allows. */}}
{{- define "valuation.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one workload's objects: <fullname>-<component>. */}}
{{- define "valuation.componentName" -}}
{{- printf "%s-%s" (include "valuation.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "valuation.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "valuation.labels" -}}
{{ include "valuation.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "valuation.serviceAccountName" -}}
{{- default (include "valuation.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "valuation.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* The tracking server's in-cluster URL, as every MLflow client here uses it. */}}
{{- define "valuation.trackingUri" -}}
http://{{ include "valuation.componentName" (dict "root" . "component" "tracking") }}:{{ .Values.tracking.port }}
{{- end -}}

{{/* Pod-level settings every workload shares: service account, security context, pull secrets. */}}
{{- define "valuation.podCommon" -}}
serviceAccountName: {{ include "valuation.serviceAccountName" . }}
automountServiceAccountToken: false
{{ include "valuation.podSecurity" . }}
{{- end -}}

{{/* The pod security context and pull secrets (the vault-init Job has its own service account). */}}
{{- define "valuation.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container-level settings every container shares. */}}
{{- define "valuation.containerCommon" -}}
image: {{ include "valuation.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* MLflow client and Redis connection, as the proxy and the worker read them. */}}
{{- define "valuation.clientEnv" -}}
- name: MLFLOW_TRACKING_URI
  value: {{ include "valuation.trackingUri" . | quote }}
- name: REDIS_HOST
  value: {{ .Values.redis.host | quote }}
- name: REDIS_PORT
  value: {{ .Values.redis.port | quote }}
- name: REDIS_DB
  value: {{ .Values.redis.db | quote }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
- name: PREDICTION_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.predictionStore.existingSecret }}
      key: {{ .Values.predictionStore.key }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Scheduling knobs of one workload's values (nodeSelector, tolerations, affinity). */}}
{{- define "valuation.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* An emptyDir volume list entry per name. */}}
{{- define "valuation.emptyDirs" -}}
{{- range . }}
- name: {{ . }}
  emptyDir: {}
{{- end }}
{{- end -}}
