{{ stage_span_type('postprocess') }}
