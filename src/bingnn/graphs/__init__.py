"""Node property prediction on large graphs: data, neighbour sampling, training, distillation."""
