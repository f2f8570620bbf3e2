{{ stage_span_type('delivery') }}
