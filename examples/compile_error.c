int main() {
    return undefined_variable;
}
