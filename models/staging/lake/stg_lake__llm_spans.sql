{{ stage_span_type('llm') }}
