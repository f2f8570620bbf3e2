{{ stage_span_type('rerank') }}
