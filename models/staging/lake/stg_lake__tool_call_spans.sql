{{ stage_span_type('tool_call') }}
