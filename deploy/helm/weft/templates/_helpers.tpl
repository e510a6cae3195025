{{- define "weft.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
