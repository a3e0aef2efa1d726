{{/*
Names, labels and shared pieces of the llmopt chart.
*/}}

{{/* The services in pipeline order, and which of them are horizontally scalable. */}}
{{- define "llmopt.services" -}}
ingest aggregator detector decision actuator quantizer notifier console
{{- end -}}

{{- define "llmopt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name, at most 52 characters so that "-<service>" suffixes (longest:
"-aggregator", 11) stay within the 63-character limit of names and labels.
*/}}
{{- define "llmopt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llmopt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels common to every component. */}}
{{- define "llmopt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmopt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "llmopt.labels" -}}
helm.sh/chart: {{ include "llmopt.chart" . }}
{{ include "llmopt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmopt
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Annotations of every resource (may be empty). */}}
{{- define "llmopt.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{/*
Component helpers take a dict: (dict "root" $ "component" "ingest").
*/}}
{{- define "llmopt.componentName" -}}
{{- printf "%s-%s" (include "llmopt.fullname" .root) .component -}}
{{- end -}}

{{- define "llmopt.componentSelectorLabels" -}}
{{ include "llmopt.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "llmopt.componentLabels" -}}
{{ include "llmopt.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "llmopt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmopt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llmopt.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* Whether Kafka SASL is in use, as "true" or "". */}}
{{- define "llmopt.kafka.sasl" -}}
{{- if hasPrefix "sasl_" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{- define "llmopt.kafka.secretName" -}}
{{- default (printf "%s-kafka" (include "llmopt.fullname" .)) .Values.kafka.sasl.existingSecret -}}
{{- end -}}

{{- define "llmopt.redis.secretName" -}}
{{- default (printf "%s-redis" (include "llmopt.fullname" .)) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "llmopt.kafka.caPath" -}}
/etc/llmopt/kafka-ca/{{ .Values.kafka.tls.caSecretKey }}
{{- end -}}

{{- define "llmopt.configPath" -}}
/etc/llmopt/llmopt.toml
{{- end -}}

{{/*
Helm reads every number of the values as a float64, and toToml writes 6 as `6.0`, which the
binary's integer fields refuse. This walks a map (in place: pass a copy) and turns every whole
float into an int64, in nested maps and lists too. Fractional numbers stay floats; integers are
accepted by float fields.
*/}}
{{- define "llmopt.intify" -}}
{{- $m := . -}}
{{- range $k, $v := $m -}}
{{- if kindIs "float64" $v -}}
{{- if eq $v (floor $v) -}}{{- $_ := set $m $k (int64 $v) -}}{{- end -}}
{{- else if kindIs "map" $v -}}
{{- include "llmopt.intify" $v -}}
{{- else if kindIs "slice" $v -}}
{{- $new := list -}}
{{- range $e := $v -}}
{{- if and (kindIs "float64" $e) (eq $e (floor $e)) -}}{{- $new = append $new (int64 $e) -}}
{{- else if kindIs "map" $e -}}{{- include "llmopt.intify" $e -}}{{- $new = append $new $e -}}
{{- else if kindIs "slice" $e -}}{{- $w := dict "l" $e -}}{{- include "llmopt.intify" $w -}}{{- $new = append $new $w.l -}}
{{- else -}}{{- $new = append $new $e -}}
{{- end -}}
{{- end -}}
{{- $_ := set $m $k $new -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
llmopt.toml: .Values.config, with the keys the dedicated values own set on top of it (`set`,
not a merge: sprig's merges skip zero values such as an empty topic prefix).
*/}}
{{- define "llmopt.config" -}}
{{- $cfg := deepCopy (default dict .Values.config) -}}
{{- $admin := default dict (get $cfg "admin") -}}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.admin.port)) -}}
{{- $_ = set $cfg "admin" $admin -}}
{{- $transport := default dict (get $cfg "transport") -}}
{{- $_ = set $transport "kind" "kafka" -}}
{{- $_ = set $transport "topic_prefix" .Values.kafka.topicPrefix -}}
{{- $_ = set $transport "partitions" .Values.kafka.partitions -}}
{{- $kafka := default dict (get $transport "kafka") -}}
{{- $_ = set $kafka "bootstrap_servers" .Values.kafka.bootstrapServers -}}
{{- $_ = set $kafka "client_id" .Values.kafka.clientId -}}
{{- $_ = set $kafka "security_protocol" .Values.kafka.securityProtocol -}}
{{- $_ = set $kafka "session_timeout_ms" .Values.kafka.sessionTimeoutMs -}}
{{- $_ = set $kafka "replication_factor" .Values.kafka.replicationFactor -}}
{{- if include "llmopt.kafka.sasl" . -}}
{{- $_ = set $kafka "sasl_mechanism" .Values.kafka.sasl.mechanism -}}
{{- end -}}
{{- if .Values.kafka.tls.caSecret -}}
{{- $_ = set $kafka "ssl_ca_location" (include "llmopt.kafka.caPath" .) -}}
{{- end -}}
{{- if .Values.kafka.properties -}}
{{- $props := default dict (get $kafka "properties") -}}
{{- range $k, $v := .Values.kafka.properties -}}
{{- $_ = set $props $k $v -}}
{{- end -}}
{{- $_ = set $kafka "properties" $props -}}
{{- end -}}
{{- $_ = set $transport "kafka" $kafka -}}
{{- $_ = set $cfg "transport" $transport -}}
{{- $state := default dict (get $cfg "state") -}}
{{- $_ = set $state "kind" "redis" -}}
{{- $_ = set $state "redis_url" .Values.redis.url -}}
{{- $_ = set $state "key_prefix" .Values.redis.keyPrefix -}}
{{- $_ = set $cfg "state" $state -}}
{{- if .Values.quantizer.enabled -}}
{{- $quantizer := default dict (get $cfg "quantizer") -}}
{{- $_ = set $quantizer "artifact_store" .Values.quantizer.persistence.mountPath -}}
{{- if .Values.quantizer.models.existingClaim -}}
{{- $_ = set $quantizer "model_root" .Values.quantizer.models.mountPath -}}
{{- end -}}
{{- $_ = set $cfg "quantizer" $quantizer -}}
{{- end -}}
{{- if .Values.otel.enabled -}}
{{- $telemetry := dict "otlp_endpoint" .Values.otel.endpoint "metrics_interval_s" .Values.otel.metricsIntervalSeconds -}}
{{- $_ = set $cfg "telemetry" $telemetry -}}
{{- end -}}
{{- include "llmopt.intify" $cfg -}}
{{- toToml $cfg -}}
{{- end -}}

{{/* The Kafka topic operators read alerts from. */}}
{{- define "llmopt.alertsTopic" -}}
{{- $names := dig "transport" "topic_names" dict (default dict .Values.config) -}}
{{- default (printf "%salerts" .Values.kafka.topicPrefix) (get $names "alerts") -}}
{{- end -}}

{{/*
OTEL_RESOURCE_ATTRIBUTES of a container (takes the component dict): where it runs (k8s.pod.name
from the K8S_POD_NAME variable the Deployment sets from the downward API, expanded by the
kubelet), then otel.resourceAttributes, which win on equal keys (the SDK keeps the last).
*/}}
{{- define "llmopt.otel.resourceAttributes" -}}
{{- $attrs := list (printf "k8s.namespace.name=%s" .root.Release.Namespace) "k8s.pod.name=$(K8S_POD_NAME)" (printf "k8s.container.name=%s" .component) -}}
{{- range $k, $v := .root.Values.otel.resourceAttributes -}}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $attrs -}}
{{- end -}}

{{/* The collector's port, from otel.endpoint (the scheme's default when it names none: 80, or 443 should https:// ever be allowed). */}}
{{- define "llmopt.otel.port" -}}
{{- $url := urlParse .Values.otel.endpoint -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- if $port -}}{{ $port }}{{- else if eq $url.scheme "https" -}}443{{- else -}}80{{- end -}}
{{- end -}}
