"""Classical engines that need no model weights: keyframe selection, edit filters, flow-guided inbetweening."""
