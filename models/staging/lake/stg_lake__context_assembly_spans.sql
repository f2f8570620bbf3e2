{{ stage_span_type('context_assembly') }}
