{{/* Chart name, truncated to the 63 characters DNS names allow. */}}
{{- define "prodtune-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or just the release name when it already contains the chart name. */}}
{{- define "prodtune-serving.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's resources: <fullname>-<component>. Call with (list $ "router"). */}}
{{- define "prodtune-serving.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "prodtune-serving.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "prodtune-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. Call with the root context. */}}
{{- define "prodtune-serving.labels" -}}
helm.sh/chart: {{ include "prodtune-serving.chart" . }}
app.kubernetes.io/name: {{ include "prodtune-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: prodtune
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component. Call with (list $ "router"). */}}
{{- define "prodtune-serving.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "prodtune-serving.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component. Call with (list $ "router"). */}}
{{- define "prodtune-serving.componentLabels" -}}
{{ include "prodtune-serving.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "prodtune-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prodtune-serving.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference from {repository, tag, digest}; the tag defaults to appVersion.
     Call with (list $ .Values.router.image). */}}
{{- define "prodtune-serving.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* Pod securityContext: chart-wide defaults overridden by the component's. Call with (list $ .Values.router). */}}
{{- define "prodtune-serving.podSecurityContext" -}}
{{- $root := index . 0 -}}
{{- $comp := index . 1 }}
{{- toYaml (mergeOverwrite (deepCopy $root.Values.podSecurityContext) (default (dict) $comp.podSecurityContext)) }}
{{- end }}

{{/* Container securityContext, same merge. Call with (list $ .Values.router). */}}
{{- define "prodtune-serving.containerSecurityContext" -}}
{{- $root := index . 0 -}}
{{- $comp := index . 1 }}
{{- toYaml (mergeOverwrite (deepCopy $root.Values.containerSecurityContext) (default (dict) $comp.containerSecurityContext)) }}
{{- end }}

{{/* Secret holding the router API key. */}}
{{- define "prodtune-serving.apiKeySecretName" -}}
{{- default (printf "%s-api-key" (include "prodtune-serving.fullname" .)) .Values.router.apiKey.existingSecret }}
{{- end }}

{{/* Base URL of Ollama for the router and UI. */}}
{{- define "prodtune-serving.ollamaHost" -}}
{{- if .Values.ollama.enabled }}
{{- printf "http://%s:%v" (include "prodtune-serving.componentName" (list . "ollama")) .Values.ollama.service.port }}
{{- else }}
{{- required "router.externalOllamaHost is required when ollama.enabled=false" .Values.router.externalOllamaHost }}
{{- end }}
{{- end }}

{{/* Weaviate connection for serving.config.ServingSettings (PRODTUNE_SERVING_*); weaviate-client v4
     needs HTTP and gRPC. */}}
{{- define "prodtune-serving.weaviateEnv" -}}
{{- $w := .Values.router.externalWeaviate }}
- name: PRODTUNE_SERVING_VECTOR_BACKEND
  value: "weaviate"
{{- if .Values.weaviate.enabled }}
- name: PRODTUNE_SERVING_WEAVIATE_HTTP_HOST
  value: {{ include "prodtune-serving.componentName" (list . "weaviate") | quote }}
- name: PRODTUNE_SERVING_WEAVIATE_HTTP_PORT
  value: {{ .Values.weaviate.httpPort | quote }}
- name: PRODTUNE_SERVING_WEAVIATE_GRPC_HOST
  value: {{ include "prodtune-serving.componentName" (list . "weaviate-grpc") | quote }}
- name: PRODTUNE_SERVING_WEAVIATE_GRPC_PORT
  value: {{ .Values.weaviate.grpcPort | quote }}
{{- else }}
- name: PRODTUNE_SERVING_WEAVIATE_HTTP_HOST
  value: {{ required "router.externalWeaviate.httpHost is required when weaviate.enabled=false" $w.httpHost | quote }}
- name: PRODTUNE_SERVING_WEAVIATE_HTTP_PORT
  value: {{ $w.httpPort | quote }}
- name: PRODTUNE_SERVING_WEAVIATE_GRPC_HOST
  value: {{ default $w.httpHost $w.grpcHost | quote }}
- name: PRODTUNE_SERVING_WEAVIATE_GRPC_PORT
  value: {{ $w.grpcPort | quote }}
{{- end }}
{{- if and .Values.weaviate.enabled .Values.weaviate.auth.enabled }}
- name: PRODTUNE_SERVING_WEAVIATE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "weaviate.auth.existingSecret is required when weaviate.auth.enabled=true" .Values.weaviate.auth.existingSecret }}
      key: {{ .Values.weaviate.auth.existingSecretKey }}
{{- end }}
{{- end }}

{{/* The router API key (PRODTUNE_API_KEY, read by serving.api.settings), only ever from a Secret. */}}
{{- define "prodtune-serving.apiKeyEnv" -}}
{{- if .Values.router.apiKey.enabled }}
- name: PRODTUNE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "prodtune-serving.apiKeySecretName" . }}
      key: {{ .Values.router.apiKey.existingSecretKey }}
{{- end }}
{{- end }}

{{/* Router env: LLM backend, models, Weaviate, MLflow, API key. */}}
{{- define "prodtune-serving.routerEnv" -}}
- name: PRODTUNE_LLM_BACKEND
  value: {{ .Values.router.llmBackend | quote }}
{{- if eq .Values.router.llmBackend "ollama" }}
- name: OLLAMA_HOST
  value: {{ include "prodtune-serving.ollamaHost" . | quote }}
# The router sends each model as many requests at once as Ollama serves (serving/llm/gate.py).
- name: PRODTUNE_LLM_OLLAMA_NUM_PARALLEL
  value: {{ .Values.ollama.numParallel | quote }}
{{- else }}
- name: PRODTUNE_LLM_CACHE_DIR
  value: /models-cache
{{ include "prodtune-serving.s3Env" . | trim }}
{{- end }}
{{ include "prodtune-serving.modelEnv" . | trim }}
{{ include "prodtune-serving.weaviateEnv" . | trim }}
- name: MLFLOW_TRACKING_URI
  value: {{ .Values.mlflowTrackingUri | quote }}
{{ include "prodtune-serving.apiKeyEnv" . | trim }}
{{- end }}

{{/* /tmp as emptyDir: the root filesystems are read-only. */}}
{{- define "prodtune-serving.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{/* Which models serve: read by serving.llm.resolve.LlmSettings in the router and the Ollama import. */}}
{{- define "prodtune-serving.modelEnv" -}}
- name: PRODTUNE_LLM_ALIAS
  value: {{ .Values.models.alias | quote }}
- name: PRODTUNE_LLM_DESCRIBER_REGISTERED
  value: {{ .Values.models.describer | quote }}
- name: PRODTUNE_LLM_QA_REGISTERED
  value: {{ .Values.models.qa | quote }}
- name: PRODTUNE_LLM_QUANT
  value: {{ .Values.models.quant | quote }}
{{- end }}

{{/* S3 access for GGUF downloads (components.common.settings names); keys only from a Secret. */}}
{{- define "prodtune-serving.s3Env" -}}
{{- with .Values.s3.endpointUrl }}
- name: PRODTUNE_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
{{- with .Values.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}
