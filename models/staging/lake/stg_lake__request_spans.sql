{{ stage_span_type('request') }}
