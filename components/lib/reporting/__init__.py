"""What people read: metrics, pictures, the HTML report and the model card."""
