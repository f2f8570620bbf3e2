{{ stage_span_type('model_routing') }}
