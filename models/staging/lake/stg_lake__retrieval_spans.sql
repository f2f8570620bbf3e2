{{ stage_span_type('retrieval') }}
