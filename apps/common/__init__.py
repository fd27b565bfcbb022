"""What the three apps share: run folders and the run record (`runs`), Gradio helpers (`gradio`)."""
