{{ stage_span_type('query_rewrite') }}
