"""What people read: metrics, pictures and the HTML report (the model cards are components/lib/cards)."""
