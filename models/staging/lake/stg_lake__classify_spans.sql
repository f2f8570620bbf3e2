{{ stage_span_type('classify') }}
