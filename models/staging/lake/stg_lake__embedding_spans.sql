{{ stage_span_type('embedding') }}
